"""``python -m experiments <plan.yaml> [--only RUN ...] [--dry-run] [--exploratory]``."""

from experiments.runner import main

if __name__ == "__main__":
    main()
