"""One construct per concern; infra/stack.py wires them together for one environment."""
