"""studykit: a reproducible study of how an LLM runs on vLLM on a given accelerator."""

__version__ = "0.1.0"
