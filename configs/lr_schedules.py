"""Learning-rate functions for LearningRateScheduler: fn(epoch, lr) -> lr."""


def halve_after_two(epoch, lr):
    """Keep the rate for epochs 0 and 1, then halve it every epoch."""
    return lr if epoch < 2 else lr * 0.5
