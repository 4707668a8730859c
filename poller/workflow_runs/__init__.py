"""The ``workflow_runs`` source: Mistral's workflow runs, read in time windows.

``source`` polls the runs list (``WorkflowRunPoller``). The runs' spec is
``sources.WORKFLOW_RUNS``, their event types ``catalog.workflow_runs``; what executing,
terminating or cancelling through the proxy says about a run is read by ``poller.hints``.
"""
