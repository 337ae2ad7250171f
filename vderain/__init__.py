"""vderain: video deraining with a spatio-temporal residual network.

Data flows one way: read -> clip -> model -> write.

    from vderain import derain_video, derain_frames, get_method
"""
__version__ = "0.1.0"


class VderainError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""


def stop_signals_as_interrupt() -> None:
    """SIGTERM (how cluster schedulers and `kill` stop a job) and SIGHUP raise KeyboardInterrupt like Ctrl-C,
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
        # the terminal or ssh session closed: its default kills the process mid-file, leaving a
        # temp file and no checkpoint; left alone where ignored (nohup: the run goes on)
        hup = getattr(signal, "SIGHUP", None)
        if hup is not None and signal.getsignal(hup) is not signal.SIG_IGN:
            signal.signal(hup, handler)


def is_out_of_memory(e: BaseException) -> bool:
    """Whether an error says memory ran out: CUDA's OutOfMemoryError, Python's MemoryError, or
    torch's CPU allocator failing, which raises a plain RuntimeError ("DefaultCPUAllocator:
    can't allocate memory")."""
    if isinstance(e, MemoryError):
        return True
    import torch
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and ("DefaultCPUAllocator" in text or "out of memory" in text.lower())


def __getattr__(name):
    # Lazy re-exports keep `import vderain` cheap (no torch/av import until needed).
    if name in ("derain_video", "derain_frames"):
        from vderain import pipeline
        return getattr(pipeline, name)
    if name == "get_method":
        from vderain.methods import get_method
        return get_method
    raise AttributeError(name)
