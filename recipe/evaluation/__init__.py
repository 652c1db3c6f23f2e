"""The evaluation: scoring, the method runner, predictions reuse, the report, the LLM judge, the training curves."""
