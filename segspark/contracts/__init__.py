"""Table contracts: column names, schemas with comments, and the inventory of every table segspark writes."""
