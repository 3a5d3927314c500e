"""The pruner: structured and unstructured masks, ADMM / communication-aware pruning (CaP), and surgery that
removes pruned channels from the model."""
