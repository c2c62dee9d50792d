package ca

// ClockSkew is clockSkew, for the tests of package ca_test.
const ClockSkew = clockSkew
