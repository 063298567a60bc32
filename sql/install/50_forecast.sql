-- 50_forecast.sql: the forecasting functions, thin wrappers over the
-- numerical core in src/forecast/ (see docs/forecasting.md).
--
-- Both are pure: they read only their arguments, so they are IMMUTABLE and
-- PARALLEL SAFE, and reveal nothing (99_privileges.sql lets the monitor
-- role call dm_forecast).  Positions (events) count from 1 like array
-- subscripts: vals[1] is position 1, forecast step k is position
-- array_length(vals, 1) + k.
--
-- Functions and their comments only, each CREATE OR REPLACE: the update
-- from 0.1.0 pastes this file whole
-- (sql/upgrade/0.1.0--0.2.0/50_forecast.include).

CREATE OR REPLACE FUNCTION driftmirror.dm_forecast(vals float8[], seasons int[], horizon int,
                                        method text DEFAULT 'auto',
                                        events jsonb DEFAULT NULL,
                                        interpolate boolean DEFAULT false)
RETURNS TABLE(step int, yhat float8, lo80 float8, hi80 float8, lo95 float8, hi95 float8)
LANGUAGE c
IMMUTABLE PARALLEL SAFE
ROWS 48
AS 'MODULE_PATHNAME', 'driftmirror_dm_forecast';

COMMENT ON FUNCTION driftmirror.dm_forecast(float8[], int[], int, text, jsonb, boolean) IS
'forecast horizon steps of vals with 80 and 95 percent prediction intervals; methods auto, snaive, hw, mstl, arima, prophet, theta, naive; events: [{"name", "start", "end", "before", "after"}] positions from 1';

CREATE OR REPLACE FUNCTION driftmirror.dm_forecast_model(vals float8[], seasons int[], horizon int,
                                              method text DEFAULT 'auto',
                                              events jsonb DEFAULT NULL,
                                              interpolate boolean DEFAULT false)
RETURNS text
LANGUAGE c
IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'driftmirror_dm_forecast_model';

COMMENT ON FUNCTION driftmirror.dm_forecast_model(float8[], int[], int, text, jsonb, boolean) IS
'the model dm_forecast uses for the same arguments, e.g. "hw ETS(A,Ad,A) m=48"';
