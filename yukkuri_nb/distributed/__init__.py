"""Run workflow steps on a Dask cluster (optional extra: ``pip install "yukkuri_nb[dask]"``).

::

    from distributed import Client, LocalCluster
    from yukkuri_nb.distributed import DaskExecutor

    client = Client(LocalCluster(n_workers=2, threads_per_worker=1))   # or Client("tcp://scheduler:8786")
    engine = WorkflowEngine(executor=DaskExecutor(client))

Steps run on the cluster; the engine keeps pools, priorities, pause / resume /
cancel, retries, progress and history.  See :mod:`.executor`.
"""

from .executor import DaskExecutor

__all__ = ["DaskExecutor"]
