"""Building blocks shared by the tests; test modules import these, never each other.

project.py        ROOT, sh, project_env, make_project (a git+DVC copy), set_params, read_json
data.py           small in-memory data: messy_frame, a data-version manifest
sweep_checks.py   read back what a sweep left (DVC's queue and experiments, trackers)
wandb_records.py  read a W&B offline run file
notebooks.py      execute a notebook in a project copy
"""
