"""The training machinery the RL trainer (`recipe.training.trainer`) and the cold start share: the masked
log-prob forward, optimizer and schedule set-up, micro-batching by tokens, the trajectory batch,
checkpoints, metrics tracking (TensorBoard, optional wandb), timers and how an update is reduced over ranks and applied."""
