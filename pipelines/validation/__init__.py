"""Building blocks of the validation gate (the entry point is :func:`pipelines.validate.validate_batch`)."""
