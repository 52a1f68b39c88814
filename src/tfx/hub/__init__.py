"""Models and the Hub, through huggingface_hub: cache-first resolution, minimal downloads, the local cache,
search, and the offline rules. Importing this package imports neither huggingface_hub nor rich nor torch;
each function imports what it uses.

    settings  the environment given to huggingface_hub, offline state, token discovery, notes on stderr
    names     what a model name and a revision may be (validate_revision)
    files     which files a run needs (one weights format) and the order they are fetched in
    cache     finding a model in the cache without a request (refs, snapshots)
    resolve   name -> local directory (Resolved), downloading only when needed
    download  the plan (model info + dry run) and the fetch (snapshot_download)
    progress  the one progress bar, fed by snapshot_download's tqdm_class
    manage    the cache as a whole: scan (ls), delete one repository (rm)
    search    Hub search, and with_deadline for library calls with no time-out

Failures are not translated here: they propagate as the library raises them, with the model, revision
or action attached by errors.about, and errors.explain turns them into one line at the catch point."""

from tfx.hub.cache import cached_snapshot, find_cached, read_ref, repo_dir, write_ref
from tfx.hub.download import PLAN_DEADLINE_S, Plan, download_model, fetch, plan_download
from tfx.hub.files import CONFIG_FILES, TOKENIZER_FILES, WEIGHT_FILES, download_groups, select_files
from tfx.hub.manage import CachedModel, cached_models, delete_cached, disk_usage, matching_cached, repo_folder, scan_cache
from tfx.hub.names import check_name, validate_revision
from tfx.hub.progress import DownloadBar
from tfx.hub.resolve import Resolved, resolve
from tfx.hub.search import SEARCH_DEADLINE_S, search, with_deadline
from tfx.hub.settings import HUB_TIMEOUT_S, cache_dir, configure_env, format_size, is_offline, say, token_source

__all__ = [
    "CONFIG_FILES", "HUB_TIMEOUT_S", "PLAN_DEADLINE_S", "SEARCH_DEADLINE_S", "TOKENIZER_FILES", "WEIGHT_FILES",
    "CachedModel", "DownloadBar", "Plan", "Resolved",
    "cache_dir", "cached_models", "cached_snapshot", "check_name", "configure_env", "delete_cached", "disk_usage",
    "download_groups", "download_model", "fetch", "find_cached", "format_size", "is_offline", "matching_cached",
    "plan_download", "read_ref", "repo_dir", "repo_folder", "resolve", "say", "scan_cache", "search", "select_files",
    "token_source", "validate_revision", "with_deadline", "write_ref",
]  # fmt: skip
