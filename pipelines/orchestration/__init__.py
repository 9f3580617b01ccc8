"""What the Airflow tasks call: plain functions over primitives, returning JSON dicts.

The DAG files in ``dags/`` only wire; each task body imports one function from
:mod:`pipelines.orchestration.tasks` and calls it with primitives (the logical date as an ISO string, the DAG
run id, a model family, project-relative paths). Each function builds the step context
(:func:`pipelines.orchestration.context.step_context`), runs one step of the step contract and returns
``StepResult.to_dict()``, the task's XCom: paths, URIs, run ids and metrics, never data frames.

* :mod:`~pipelines.orchestration.context`: the step context of a DAG run, logical dates, path handling;
* :mod:`~pipelines.orchestration.sources`: where the batch of a logical date comes from (the generator's
  cache or a landing folder);
* :mod:`~pipelines.orchestration.tasks`: the task functions. Every call into another step module
  (validate, publish, register, promote, the generator, DVC) lives there, so a changed signature is
  adapted in one place.

Nothing here imports Airflow: a failed gate raises :class:`~pipelines.orchestration.tasks.GateRejected`
(a :class:`core.errors.RecopsError`) and the DAG turns it into ``AirflowFailException``.
"""
