"""vderain: video deraining with a spatio-temporal residual network.

Data flows one way: read -> clip -> model -> write.

    from vderain import derain_video, derain_frames, get_method
"""
__version__ = "0.1.0"


class VderainError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""


def stop_signals_as_interrupt() -> None:
    """SIGTERM (how cluster schedulers and `kill` stop a job) raises KeyboardInterrupt like Ctrl-C,
    so a run removes its temporary output and training checkpoints; so does SIGINT in a job a
    shell started in the background (`&`, nohup), which inherits SIGINT ignored. Main thread only."""
    import signal
    import threading

    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, handler)


def __getattr__(name):
    # Lazy re-exports keep `import vderain` cheap (no torch/av import until needed).
    if name in ("derain_video", "derain_frames"):
        from vderain import pipeline
        return getattr(pipeline, name)
    if name == "get_method":
        from vderain.methods import get_method
        return get_method
    raise AttributeError(name)
