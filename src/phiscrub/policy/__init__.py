"""What to do with each attribute: the Annex E table, options, overrides and named profiles."""

from phiscrub.policy.actions import Action, Option
from phiscrub.policy.config import Config, load_config
from phiscrub.policy.profile import Policy, Rule

__all__ = ["Action", "Option", "Config", "load_config", "Policy", "Rule"]
