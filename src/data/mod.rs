//! Data sets: the bundled digits CSV and MNIST IDX files, generic CSV, the small teaching problems; splits, scaling, one-hot targets.
