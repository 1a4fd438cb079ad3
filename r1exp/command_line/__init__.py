"""What a command line asks for, read before and after Hydra composes it: group choices and
knob overrides checked first (group_overrides.py), then the recipe in force and what it
changed (recipe.py). It sits above the stages: both ask a stage which knob nodes it reads."""
