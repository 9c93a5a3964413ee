"""Zone transfers out: access rules, packing, AXFR/IXFR answers and NOTIFY."""
