"""The per-task settings (tfx.settings.tasks), each field declared once with the metadata every surface
reads (tfx.settings.schema)."""

from tfx.settings.schema import (  # noqa: F401
    GENERATION_PANEL, TASK_PANEL, Opt, SettingError, SettingField, check_bounds, cli_namer, describe_bounds, http_namer, option, schema, schema_field,
)
from tfx.settings.tasks import *  # noqa: F401,F403
from tfx.settings.tasks import (  # noqa: F401
    AGGREGATIONS, GENERATION_KEYS, LIBRARY_FALLBACK_MAX_LENGTH, MIN_REPETITION_PENALTY, MIN_TEMPERATURE, SEED_MAX, SETTINGS, SUMMARIZE_STRATEGIES,
    ClassifySettings, EmbedSettings, FillMaskSettings, GenerateSettings, GenerationSettings, NerSettings, QaSettings, RankSettings, Settings,
    SummarizeSettings, TranslateSettings,
)
