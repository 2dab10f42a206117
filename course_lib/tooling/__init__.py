"""Course tooling, never imported by students: ``notebooks`` (execute and store notebooks),
``grading`` (release exercises, grade submissions in a sandbox), ``book`` (the static website),
``lab_config`` (the students' JupyterLab settings)."""
