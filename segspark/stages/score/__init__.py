"""The score stage: a saved model assigns a later snapshot's customers to segments."""
