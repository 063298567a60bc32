# demo/chart.awk: a compact terminal chart of a series and its forecast.
#
# Input lines: kind,value,lo95,hi95   (kind h = history, f = forecast;
# lo95/hi95 empty for history).  Points are averaged into at most WIDTH
# columns; the chart is HEIGHT rows.  History is drawn with '*', the
# forecast with 'o', its 95% interval with ':'.
BEGIN { FS = ","; if (!WIDTH) WIDTH = 96; if (!HEIGHT) HEIGHT = 14 }
{
    n++; kind[n] = $1; val[n] = $2 + 0
    lo[n] = ($3 == "") ? $2 + 0 : $3 + 0
    hi[n] = ($4 == "") ? $2 + 0 : $4 + 0
    if (n == 1 || lo[n] < ymin) ymin = lo[n]
    if (n == 1 || hi[n] > ymax) ymax = hi[n]
    if ($1 == "h") nh++
}
END {
    if (n == 0) exit
    per = (n + WIDTH - 1) / WIDTH; per = int(per); if (per < 1) per = 1
    cols = int((n + per - 1) / per)
    for (c = 0; c < cols; c++) {
        s = 0; l = 0; h = 0; k = 0; isf = 0
        for (i = c * per + 1; i <= n && i <= (c + 1) * per; i++) {
            s += val[i]; l += lo[i]; h += hi[i]; k++
            if (kind[i] == "f") isf = 1
        }
        cv[c] = s / k; cl[c] = l / k; ch[c] = h / k; cf[c] = isf
    }
    span = ymax - ymin; if (span <= 0) span = 1
    for (r = HEIGHT - 1; r >= 0; r--) {
        top = ymin + span * (r + 1) / HEIGHT; bot = ymin + span * r / HEIGHT
        line = ""
        for (c = 0; c < cols; c++) {
            ch_ = " "
            if (cf[c] && ch[c] >= bot && cl[c] < top) ch_ = ":"
            if (cv[c] >= bot && cv[c] < top || (r == HEIGHT - 1 && cv[c] >= top)) ch_ = cf[c] ? "o" : "*"
            line = line ch_
        }
        printf "%9.1f |%s\n", (top + bot) / 2, line
    }
    axis = ""; for (c = 0; c < cols; c++) axis = axis ((c == int(nh / per)) ? "^" : "-")
    printf "%9s +%s\n", "", axis
    printf "%9s  history (*) | forecast (o) with 95%% interval (:); ^ marks now; %d points per column\n", "", per
}
