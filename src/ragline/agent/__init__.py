"""Agents: the tool-using loop (`loop`), its tools (`tools`), durable state (`state`) and the
sandbox for model-written code (`sandbox`)."""
