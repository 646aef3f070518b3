"""Studies: grids of training runs and the tables, figures and reports made from them."""
