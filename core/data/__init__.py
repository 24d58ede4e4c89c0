"""Demonstration datasets: the on-disk episode format, readers, statistics and the chunk sampler.

Book 16.3 (demonstrations), 14.1.3 (normalization statistics on the training data only),
17.2 and 18.2 (windows of past observations and chunks of future actions).

  format    the on-disk layout (LeRobot v3.0) and the feature specification
  writer    `DatasetWriter`: episodes in, a complete dataset out, atomically
  reader    `EpisodeReader`: the common read interface
  lerobot   `LeRobotReader`: our datasets and LeRobot's (v3.0, image mode), streamed
  hdf5_act  `ACTHDF5Reader` for ACT-style `episode_<i>.hdf5` files
  cache     `ByteBoundedCache`: the readers' memory bound
  splits    train/validation split by episode
  stats     statistics (mean/std/min/max/quantiles) and normalizers built from them
  sampler   `ChunkSampler`: batches of observation windows and action chunks
"""
