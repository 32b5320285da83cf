"""The suite's Ray instances: one local Ray of 2 CPUs that the tests asking for it share (`shared_ray`, the
`ray_2cpu` fixture), and a Ray of a test's own for tests that need other resources or settings (`own_ray`).

Starting and stopping a Ray takes 3 to 4 s on 2 cores; most in-process studies run on the same 2-CPU instance."""

import contextlib

SETTINGS = dict(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)


def shared_ray():
    """The shared 2-CPU, GPU-less Ray: the one running if it is that, else a new one (ending any other)."""
    import ray

    if ray.is_initialized():
        resources = ray.cluster_resources()
        if resources.get("CPU") == 2 and not resources.get("GPU") and len(ray.nodes()) == 1:
            return ray
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=0, **SETTINGS)
    return ray


@contextlib.contextmanager
def own_ray(**settings):
    """A Ray of the test's own (``settings`` as ray.init takes them), in place of the shared one while it runs."""
    import ray

    ray.shutdown()
    ray.init(**{**SETTINGS, **settings})
    try:
        yield ray
    finally:
        ray.shutdown()


def end_ray() -> None:
    """Shut down whatever Ray this process runs (at the end of the session)."""
    import sys

    ray = sys.modules.get("ray")  # not imported: nothing to shut down, and no reason to import it
    if ray is not None and ray.is_initialized():
        ray.shutdown()
