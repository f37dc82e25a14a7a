package firmware

// SetStagingReserve changes the space staging leaves free, for tests.
func SetStagingReserve(n int64) (restore func()) {
	old := stagingReserve
	stagingReserve = n
	return func() { stagingReserve = old }
}
