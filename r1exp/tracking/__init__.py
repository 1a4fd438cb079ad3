"""MLflow run lifecycle: the controller opens and closes the run, workers reattach by id."""
