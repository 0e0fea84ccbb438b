"""What operators and workers decide about each queue: paused or running (`pauses`, applied in every worker
by `pausewatch`), and which worker processes consume it (`presence`).  Queue depth is booking_scaling's."""
