-- deployments/compose.yaml: the Prefect server's own database, beside Biobridge's (first start).
CREATE DATABASE prefect;
