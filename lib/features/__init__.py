"""Features: Spark SQL feature views, declarative MLlib feature pipelines, row keys."""
