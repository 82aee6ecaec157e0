"""Random environment values into every component's settings: each load gives the settings or one
:class:`~sfsync.errors.ConfigError` listing the problems, never a raw pydantic (or pydantic-settings)
error, and never a secret in the message: neither a secret setting's value nor the password of a URL.

Each example sets a few of a component's environment variables (by the names the component reads)
to generated text, loads the settings as the process does, and puts the environment back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import AliasChoices, SecretStr
from pydantic_settings import BaseSettings

from sfsync import settings as cfg
from sfsync.errors import ConfigError
from sfsync.mapping.settings import RETIRED_NAMES, MappingSettings, load_mapping_settings
from sfsync.processors.inbound.settings import InboundProcessorSettings, load_inbound_settings
from sfsync.processors.outbound.settings import ProcessorSettings, load_processor_settings
from sfsync.salesforce.governor import GovernorSettings, load_governor_settings
from sfsync.salesforce.settings import SalesforceSettings, load_settings
from sfsync.sinks.settings import SinkSettings, load_sink_settings
from sfsync.sources.settings import SourceSettings, load_source_settings

LOADERS: dict[str, tuple[type[BaseSettings], Callable[[], object]]] = {
    "kafka": (cfg.KafkaConnection, lambda: cfg.load(cfg.KafkaConnection, "kafka")),
    "registry": (cfg.RegistryConnection, lambda: cfg.load(cfg.RegistryConnection, "registry")),
    "publisher": (cfg.PublisherSettings, lambda: cfg.load(cfg.PublisherSettings, "publisher")),
    "stack": (cfg.StackSettings, lambda: cfg.load(cfg.StackSettings, "stack")),
    "sink": (SinkSettings, load_sink_settings),
    "source": (SourceSettings, load_source_settings),
    "processor": (ProcessorSettings, load_processor_settings),
    "inbound": (InboundProcessorSettings, load_inbound_settings),
    "salesforce": (SalesforceSettings, load_settings),
    "governor": (GovernorSettings, load_governor_settings),
    "mapping": (MappingSettings, load_mapping_settings),
}


def env_names(settings_class: type[BaseSettings]) -> dict[str, bool]:
    """The environment names ``settings_class`` reads -> whether the setting is a secret."""
    prefix = str(settings_class.model_config.get("env_prefix") or "")
    out: dict[str, bool] = {}
    for name, info in settings_class.model_fields.items():
        secret = "SecretStr" in str(info.annotation)
        alias = info.validation_alias
        if isinstance(alias, str):
            names = [alias]
        elif isinstance(alias, AliasChoices):
            names = [str(c) for c in alias.choices if isinstance(c, str) and c.isupper()]
        else:
            names = [f"{prefix}{name}".upper()]
        out.update(dict.fromkeys(names, secret))
    if settings_class is MappingSettings:
        out.update(dict.fromkeys(RETIRED_NAMES, False))
    return out


ENV_NAMES = {component: env_names(settings_class) for component, (settings_class, _) in LOADERS.items()}
URL_NAMES = {"SCHEMA_REGISTRY_URL", "SALESFORCE_LOGIN_URL", "SALESFORCE_INSTANCE_URL", "SALESFORCE_REDIRECT_URI"}
URL_NAMES |= {"SALESFORCE_JWT_AUDIENCE", "SFSYNC_STACK_EXTERNAL_REGISTRY"}

ODD_VALUES = [
    "", " ", "0", "-1", "1e309", "nan", "inf", "-inf", "true", "no", "[", "{", "[1, 2]", '["a"]', '{"a": 1}',
    "[[[[]]]]", "null", "None", "127.0.0.1:9092", "a:b:c", "http://", "https://x", "memory://", "2" * 400,
    "SASL_SSL", "plain", "exactly_once", "v62.0", "62.0", "a=b,c", "=x", "00D000000000001", "/nonexistent/file",
]  # fmt: skip
"""Values a setting's validation has to think about: empty, numbers at the edges, JSON, URLs, names it knows."""
env_text = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=30)
values = st.one_of(
    env_text,
    st.sampled_from(ODD_VALUES),
    st.integers().map(str),
    st.floats().map(str),
)
secrets = env_text.map(lambda text: f"sekrit-{text}")
"""Secret values: distinctive enough that finding one in a message means it was echoed."""


@st.composite
def url_with_password(draw: st.DrawFn, password: str) -> str:
    scheme = draw(st.sampled_from(["http", "https", "htps", "ftp", "HTTP", ""]))
    host = draw(st.sampled_from(["127.0.0.1", "registry.example", "login.salesforce.com", "[::1]", ""]))
    return f"{scheme}{'://' if scheme or draw(st.booleans()) else ''}user:{password}@{host}/x"


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@st.composite
def environments(draw: st.DrawFn) -> tuple[str, dict[str, str], list[str]]:
    """(component, the variables set, the secrets among their values)."""
    component = draw(st.sampled_from(sorted(LOADERS)))
    names = ENV_NAMES[component]
    chosen = draw(st.lists(st.sampled_from(sorted(names)), min_size=1, max_size=6, unique=True))
    env: dict[str, str] = {}
    hidden: list[str] = []
    for name in chosen:
        if names[name]:
            env[name] = draw(secrets)
            hidden.append(env[name])
        elif name in URL_NAMES and draw(st.booleans()):
            password = draw(secrets)
            env[name] = draw(url_with_password(password))
            hidden.append(password)
        else:
            env[name] = draw(values)
    return component, env, hidden


@given(drawn=environments())
def test_settings_load_or_fail_with_one_config_error_that_shows_no_secret(
    drawn: tuple[str, dict[str, str], list[str]],
) -> None:
    component, env, hidden = drawn
    settings_class, load = LOADERS[component]
    loaded: Any = None
    refused: ConfigError | None = None
    with environment(env):
        try:
            loaded = load()
        except ConfigError as exc:
            refused = exc
    if refused is not None:
        shown = f"{refused}\n{refused!r}\n{refused.problems}"
        assert refused.problems and all(isinstance(p, str) and p for p in refused.problems)
        for secret in hidden:
            assert secret not in shown, f"a secret is shown: {shown}"
        return
    assert isinstance(loaded, settings_class)
    shown = f"{loaded!r}\n{loaded}"
    for secret in hidden:
        assert secret not in shown
    for value in loaded.model_dump().values():
        if isinstance(value, SecretStr):
            assert value.get_secret_value() not in shown
