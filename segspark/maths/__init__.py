"""Pure segmentation maths: clustering metrics, the choice of K, naming rules. Imports no Spark."""
