-- 51_forecast_params.sql: the smoothing parameters of a fit, kept with a
-- model so that the forecasts between two trainings apply them instead of
-- estimating them again (56_models.sql, 58_scaling_phase.sql).
--
-- _forecast_params returns what hw and mstl estimate on a series, as
-- {trend (0 none, 1 additive, 2 damped), seasonal components, alpha, beta,
-- gamma1, gamma2, phi}, or NULL for the methods that have nothing to keep
-- (auto, arima, snaive, prophet, naive: they fit again at every call).
-- _forecast_with_params is dm_forecast with such parameters: the states
-- are filtered again over the new data, the parameters are not searched
-- (parameters that do not match the call's seasons are estimated again).
-- Both are pure like dm_forecast.
--
-- This file creates only new objects, so the update script lists it
-- (sql/upgrade/0.1.0--0.2.0/86_forecast_params.include).

CREATE FUNCTION driftmirror._forecast_params(vals float8[], seasons int[], horizon int,
                                             method text, events jsonb DEFAULT NULL,
                                             interpolate boolean DEFAULT false)
RETURNS float8[]
LANGUAGE c
IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'driftmirror_forecast_params';

CREATE FUNCTION driftmirror._forecast_with_params(vals float8[], seasons int[], horizon int,
                                                  method text, events jsonb,
                                                  interpolate boolean, params float8[])
RETURNS TABLE(step int, yhat float8, lo80 float8, hi80 float8, lo95 float8, hi95 float8)
LANGUAGE c
IMMUTABLE PARALLEL SAFE
ROWS 48
AS 'MODULE_PATHNAME', 'driftmirror_forecast_with_params';

REVOKE ALL ON FUNCTION driftmirror._forecast_params(float8[], int[], int, text, jsonb, boolean),
    driftmirror._forecast_with_params(float8[], int[], int, text, jsonb, boolean, float8[])
    FROM PUBLIC;
