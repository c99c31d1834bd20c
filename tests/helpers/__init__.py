"""Building blocks shared by the tests; test modules import these, never each other.

project.py        ROOT, sh, project_env, make_project (a git+DVC copy), set_params, read_json
data.py           small in-memory data: messy_frame, a data-version manifest
sweep_checks.py   read back what a sweep left (DVC's queue and experiments, trackers)
wandb_records.py  read a W&B offline run file
tracking.py       read a run back from dvclive, MLflow and W&B (offline)
models.py         models of the registry fitted on tiny data (`fitted`)
notebooks.py      execute a notebook in a project copy
"""
