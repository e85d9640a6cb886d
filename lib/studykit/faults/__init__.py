"""Fault injection: a vLLM general plugin that makes the engine wrong on purpose, to show whether a study
catches it ("would this study have caught it?"). `STUDYKIT_FAULT=<name>[,key=value...]` picks the fault; unset, the
plugin does nothing. The catalog (what each fault imitates, which vLLM function it patches) is in catalog.py,
the patches in patches.py (imported only inside vLLM), the entry point in plugin.py."""

from studykit.faults.catalog import ENV_VAR, FAULTS, LOG_MARKER, Fault, FaultError, FaultSpec, faults_in_log, parse

__all__ = ["ENV_VAR", "FAULTS", "LOG_MARKER", "Fault", "FaultError", "FaultSpec", "faults_in_log", "parse"]
