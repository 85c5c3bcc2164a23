// Shared fast-check arbitraries for the parser properties.
import fc from 'fast-check'

/**
 * Strings made by joining up to `maxLength` of `pieces`: the characters and tokens where a
 * parser can go wrong, in every order, far more often than uniform random text reaches them.
 *
 * @example
 * fc.assert(fc.property(joinedPieces(['a', '=', '&', '%']), (query) => void parseQueryString(query)))
 */
export function joinedPieces(pieces: readonly string[], maxLength = 24): fc.Arbitrary<string> {
  return fc.array(fc.constantFrom(...pieces), { maxLength }).map((parts) => parts.join(''))
}
