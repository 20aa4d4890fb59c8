# read_data(file): the data mlm reads, as the bench's R scripts read it (sourced by them).
# CSV: a column quoted in the first data row is a string column, made a factor with levels in
# C-locale order (as mlm reads R's write.csv files). HDF5: the 1-D datasets of the group "data"
# (mlm simulate's layout), read with hdf5r.
read_data <- function(file) {
  if (grepl("\\.csv$", file)) {
    header <- strsplit(readLines(file, n = 2), ",", fixed = TRUE)
    quoted <- grepl('^"', header[[2]])
    d <- read.csv(file, colClasses = ifelse(quoted, "character", NA))
    for (v in names(d)) if (is.character(d[[v]])) d[[v]] <- factor(d[[v]], levels = sort(unique(na.omit(d[[v]])), method = "radix"))
    return(d)
  }
  suppressMessages(library(hdf5r))
  f <- H5File$new(file, mode = "r")
  g <- f[["data"]]
  d <- as.data.frame(lapply(setNames(g$ls()$name, g$ls()$name), function(n) g[[n]][]))
  f$close_all()
  d
}
