"""The features stage: customer features per snapshot."""
