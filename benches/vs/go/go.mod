module spindle/benches/vs

go 1.19
