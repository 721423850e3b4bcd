"""docs/agents.md: an agent with a built-in tool and one of your own (run by tests/test_agent.py)."""

from __future__ import annotations

from ragline.agent.loop import Agent, Budget
from ragline.agent.tools import agent_tool, calculator
from ragline.llm import LLM


@agent_tool(side_effects=True)  # recorded before and after it runs: never re-run on resume
def note(text: str) -> str:
    """Save a note for the user.

    Args:
        text: The note.
    """
    return f"saved: {text}"


def main(llm: LLM) -> str | None:
    agent = Agent(llm, [calculator, note], budget=Budget(max_steps=8, max_cost_usd=0.05))
    result = agent.run("What is 17 * 23?")
    print(result.stop_reason, result.steps, result.tool_errors)
    return result.answer


if __name__ == "__main__":
    print(main(LLM("openai", "gpt-4o-mini")))
