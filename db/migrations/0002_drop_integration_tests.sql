-- The drop of integration_tests moved to 0003_connection_tests, after its rows are copied.
SELECT 1;
