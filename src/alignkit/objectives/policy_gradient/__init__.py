"""Policy-gradient objectives: losses of sampled completions' log-probs and their rewards."""

from alignkit.objectives.policy_gradient import reward_transform, task_reward  # noqa: F401
