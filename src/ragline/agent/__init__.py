"""Agents: the sandbox for model-written code (`ragline.agent.sandbox`)."""
