from tests.helpers.wandb_records import read_run, records  # noqa: F401  (moved; for test_tracking_real)
