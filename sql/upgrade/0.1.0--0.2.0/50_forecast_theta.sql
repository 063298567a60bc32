-- 50_forecast_theta.sql: dm_forecast's method list gains theta (issue 13);
-- the function itself is unchanged, only its comment (50_forecast.sql).

COMMENT ON FUNCTION driftmirror.dm_forecast(float8[], int[], int, text, jsonb, boolean) IS
'forecast horizon steps of vals with 80 and 95 percent prediction intervals; methods auto, snaive, hw, mstl, arima, prophet, theta, naive; events: [{"name", "start", "end", "before", "after"}] positions from 1';
