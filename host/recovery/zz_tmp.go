package recovery

func tmpFormat(string) string { return "tmp" }
