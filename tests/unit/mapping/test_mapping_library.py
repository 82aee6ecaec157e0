"""The mapping library: files by name with a workspace's variables, compiled and validated once, the newest kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfsync.errors import ConfigError
from sfsync.mapping import DEFAULT_MAPPING_FILE, MappingError, MappingLibrary, MappingSettings, load_mappings
from tests.kit.mappings import BAD_MAPPING, write_mappings


def test_variables_go_over_the_settings_variables_as_validate_set_does(tmp_path: Path) -> None:
    configured = write_mappings(tmp_path, DEFAULT_MAPPING_FILE.read_text(), "mine.yaml")
    settings = MappingSettings(file=configured, vars={"member_object": "Lead", "lead_source": "Partner"})
    library = MappingLibrary(settings)
    found = library.compiled(None, {"lead_source": "Event"})
    members = found.get("members")
    assert members is not None and members.target == "Lead"  # the setting's variable, kept
    assert found.variables["lead_source"] == "Event"  # the workspace's, over it
    assert found.source == str(configured)


def test_the_configured_mapping_is_answered_as_given_for_no_name_and_no_variables() -> None:
    configured = load_mappings()
    library = MappingLibrary(MappingSettings(), configured=configured)
    assert library.compiled(None) is configured and library.compiled(None, {}) is configured
    assert library.compilations == 0


def test_one_compilation_per_distinct_name_and_variables_and_the_oldest_leave_first() -> None:
    library = MappingLibrary(MappingSettings(), capacity=2)
    lead = library.compiled(None, {"member_object": "Lead"})
    assert library.compiled(None, {"member_object": "Lead"}) is lead and library.compilations == 1
    library.compiled(None, {"lead_source": "A"})
    assert library.compiled(None, {"member_object": "Lead"}) is lead  # used last: kept
    library.compiled(None, {"lead_source": "B"})  # the third: the least recently used ({A}) leaves
    assert library.compilations == 3
    assert library.compiled(None, {"member_object": "Lead"}) is lead and library.compilations == 3
    library.compiled(None, {"lead_source": "A"})
    assert library.compilations == 4  # compiled again


def test_an_invalid_mapping_is_refused_with_every_problem_once_then_from_the_cache(tmp_path: Path) -> None:
    write_mappings(tmp_path, BAD_MAPPING, "bad.yaml")
    library = MappingLibrary(MappingSettings(library=tmp_path))
    with pytest.raises(MappingError) as first:
        library.compiled("bad.yaml")
    assert len(first.value.problems) > 1 and any("constant" in p for p in first.value.problems)
    (tmp_path / "bad.yaml").unlink()  # not read again while its answer is cached
    with pytest.raises(MappingError) as again:
        library.compiled("bad.yaml")
    assert again.value.problems == first.value.problems and library.compilations == 1


def test_a_name_is_a_file_of_the_library_folder_and_nothing_else(tmp_path: Path) -> None:
    folder = tmp_path / "library"
    folder.mkdir()
    write_mappings(folder, DEFAULT_MAPPING_FILE.read_text(), "acme.yaml")
    write_mappings(tmp_path, DEFAULT_MAPPING_FILE.read_text(), "outside.yaml")
    library = MappingLibrary(MappingSettings(library=folder))
    assert library.compiled("acme").source == str(folder / "acme.yaml")  # the .yaml may be left out
    assert library.compiled("acme.yaml").source == str(folder / "acme.yaml")
    for name in ("../outside.yaml", "sub/acme.yaml", "..", ""):
        with pytest.raises(MappingError, match="not the name of a file in the mapping library"):
            library.compiled(name)
    with pytest.raises(MappingError, match="cannot read"):
        library.compiled("missing.yaml")
    with pytest.raises(MappingError, match="SFSYNC_MAPPING_LIBRARY is not set"):
        MappingLibrary(MappingSettings()).compiled("acme.yaml")


def test_a_library_setting_that_is_not_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"SFSYNC_MAPPING_LIBRARY: .* is not a folder"):
        MappingLibrary(MappingSettings(library=tmp_path / "nowhere"))
