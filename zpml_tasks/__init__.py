"""Benchmark tasks for zpml_core: training that has to find a singularity.

Application code beside the library (``zpml_core`` never imports it):

* :mod:`zpml_tasks.data` — data generators: the guide's pole ``y = 1/(x − a)``
  (``pole``), the reference's RR-arm damped-least-squares IK benchmark (``ik_ref``) and
  true-pole differential IK (``ik_pole``);
* :mod:`zpml_tasks.metrics` — strict-decoding metrics per task and the predict-0 baseline;
* :mod:`zpml_tasks.runner` — one training run through ``SCMTrainer`` on torch or JAX;
* :mod:`zpml_tasks.bench` — ``zpml bench`` (seeds, median/IQR, JSONL, summary, plots);
* :mod:`zpml_tasks.demo` — ``zpml demo``;
* :mod:`zpml_tasks.plots` — the figures.

Importing the package imports numpy only; frameworks load when a run starts.
"""

from zpml_tasks.data import TASKS, Split, Task, make_task

__all__ = ["TASKS", "Split", "Task", "make_task"]
