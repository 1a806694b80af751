"""The profile stage: segment profiles, names, plays, top products, cross-sell rules and campaigns."""
