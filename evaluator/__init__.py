"""The offline quality evaluator (see the evaluator issue)."""
