"""Operations shared by every component: the dead-letter queue, the error log, metrics and health."""
