# sweep.gp - time vs size per allreduce algorithm, measured (left) and predicted by the cost
# model (right). Called by perf/sweep.sh with: dat, pred, out, title, nalgo, algos, palgos.
set terminal pngcairo size 1400,560 font ",10"
set output out
set multiplot layout 1,2 title title
set logscale xy
set format x "%.0s%cB"
set xlabel "message size (bytes)"
set ylabel "time (us)"
set grid
set key top left
set datafile missing "-"
stats dat using 1 nooutput
set xrange [STATS_min / 1.5 : STATS_max * 1.5]
set title "measured (median of interleaved repeats)"
plot for [i=1:nalgo] dat using 1:(column(i+1)) with linespoints lw 2 pt 7 ps 0.6 \
     title word(algos, i)
set title "predicted by the cost model"
# pred columns: bytes, one per algorithm (names in palgos), then auto's pick
npred = words(palgos)
plot for [i=1:npred] pred using 1:(column(i+1)) with lines lw 2 dt 2 title word(palgos, i)
unset multiplot
